"""Name tables for synthetic identity data: original script, Latin spellings seen in practice.

Faker has no Burmese locale and no transliterations for the non-Latin locales
it does have, so the scripts that matter most in this region are curated here
by hand: each entry pairs the name in its own script with the Latin spellings
that real records of the region use for it (Mohammed / Muhammad / Mohamad …).
The first spelling is the commonest. Latin-script cultures (Indonesian,
Filipino, Australian …) come from Faker instead (see node.synthetic).
"""

from __future__ import annotations

Entry = tuple[str, tuple[str, ...]]
Table = dict[str, tuple[Entry, ...]]


def _e(original: str, *latin: str) -> Entry:
    return original, latin


# Burmese names have no family name: two to three syllables, chosen by sex.
BURMESE_MALE = (
    _e("အောင်", "Aung"), _e("ကျော်", "Kyaw", "Kyau"), _e("မင်း", "Min", "Minn"),
    _e("သိန်း", "Thein", "Thien"), _e("ထွန်း", "Htun", "Tun", "Htoon"), _e("ဝင်း", "Win", "Winn"),
    _e("ဇော်", "Zaw", "Zau"), _e("မြင့်", "Myint", "Myin"), _e("စိုး", "Soe", "So"),
    _e("နိုင်", "Naing", "Naign"), _e("သန့်", "Thant", "Thandt"), _e("ဦး", "Oo", "U"),
)  # fmt: skip
BURMESE_FEMALE = (
    _e("ခင်", "Khin", "Khinn"), _e("စု", "Su", "Soo"), _e("မြ", "Mya", "Myah"),
    _e("လှ", "Hla", "Hlaa"), _e("သီတာ", "Thida", "Theda"), _e("ငြိမ်း", "Nyein", "Nyien"),
    _e("စန်း", "San", "Sann"), _e("မိုး", "Moe", "Mo"), _e("နွယ်", "Nwe", "Nway"),
)  # fmt: skip

ARABIC: Table = {
    "male": (
        _e("محمد", "Mohammed", "Muhammad", "Mohamed", "Mohamad"), _e("أحمد", "Ahmed", "Ahmad"),
        _e("علي", "Ali", "Aly"), _e("حسين", "Hussein", "Hussain", "Husain", "Hossein"),
        _e("عبد الرحمن", "Abdul Rahman", "Abdulrahman", "Abdurrahman"),
        _e("عمر", "Omar", "Umar"), _e("يوسف", "Yusuf", "Yousef", "Youssef"),
        _e("إبراهيم", "Ibrahim", "Ebrahim"), _e("كريم", "Karim", "Kareem"),
        _e("سليم", "Salim", "Saleem"),
    ),
    "female": (
        _e("فاطمة", "Fatima", "Fatimah", "Fatema"), _e("عائشة", "Aisha", "Aysha", "Ayesha"),
        _e("زينب", "Zainab", "Zaynab", "Zeinab"), _e("مريم", "Maryam", "Mariam", "Miriam"),
        _e("نور", "Nour", "Noor", "Nur"), _e("خديجة", "Khadija", "Khadijah", "Khadeeja"),
    ),
    "family": (
        _e("الحسيني", "Al-Husseini", "Alhusseini", "El Husseini"),
        _e("العبيدي", "Al-Obaidi", "Al Obeidi", "Alobaidi"),
        _e("الجبوري", "Al-Jubouri", "Al Juburi", "Aljboori"), _e("حسن", "Hassan", "Hasan"),
        _e("صالح", "Saleh", "Salih"), _e("كاظم", "Kadhim", "Kazem", "Kazim"),
    ),
}  # fmt: skip

# Rohingya: Arabic-derived given names, women often "Begum"/"Khatun"; written here
# in Arabic script because Hanifi Rohingya is rarely used in records.
ROHINGYA: Table = {
    "male": ARABIC["male"] + (
        _e("نور الإسلام", "Nurul Islam", "Noorul Islam", "Nur Islam"),
        _e("عبد الحميد", "Abdul Hamid", "Abdulhamid", "Abdul Hameed"),
        _e("أيوب", "Ayub", "Ayoub", "Ayoob"),
    ),
    "female": ARABIC["female"] + (
        _e("رشيدة", "Rashida", "Rasheda", "Rashidah"), _e("منيرة", "Monira", "Munira"),
    ),
    "family": (
        _e("بيغم", "Begum", "Begom", "Bagum"), _e("خاتون", "Khatun", "Khatoon", "Katun"),
        _e("الله", "Ullah", "Ulla", "Olla"), _e("حسين", "Hussain", "Hossain", "Hussein"),
    ),
}  # fmt: skip

BENGALI: Table = {
    "male": (
        _e("মোহাম্মদ", "Mohammad", "Mohammed", "Md."), _e("রহিম", "Rahim", "Raheem"),
        _e("করিম", "Karim", "Kareem"), _e("আব্দুল", "Abdul", "Abdur"),
        _e("হাসান", "Hasan", "Hassan"), _e("জামাল", "Jamal", "Jamaal"),
        _e("সাকিব", "Sakib", "Shakib"), _e("রফিক", "Rafiq", "Rofiq", "Rafik"),
    ),
    "female": (
        _e("ফাতেমা", "Fatema", "Fatima"), _e("নাসরিন", "Nasrin", "Nasreen"),
        _e("সুমাইয়া", "Sumaiya", "Sumaya"), _e("রোকসানা", "Roksana", "Rukhsana"),
        _e("শাহানা", "Shahana", "Sahana"),
    ),
    "family": (
        _e("হোসেন", "Hossain", "Hussain", "Hosen"), _e("রহমান", "Rahman", "Rahaman", "Rehman"),
        _e("আহমেদ", "Ahmed", "Ahmad", "Ahmmed"), _e("চৌধুরী", "Chowdhury", "Choudhury", "Chowdhuri"),
        _e("ইসলাম", "Islam", "Eslam"), _e("মিয়া", "Mia", "Miah", "Mian"),
    ),
}  # fmt: skip

PERSIAN: Table = {
    "male": (
        _e("محمد", "Mohammad", "Mohammed", "Muhammad"), _e("حسین", "Hossein", "Hussein", "Hosein"),
        _e("رضا", "Reza", "Raza"), _e("علی", "Ali"), _e("مهدی", "Mehdi", "Mahdi"),
        _e("احمد", "Ahmad", "Ahmed"), _e("فرهاد", "Farhad", "Farhaad"),
        _e("نوید", "Navid", "Naveed"),
    ),
    "female": (
        _e("فاطمه", "Fatemeh", "Fatima", "Fatemah"), _e("زهرا", "Zahra", "Zahraa"),
        _e("مریم", "Maryam", "Mariam"), _e("شیرین", "Shirin", "Shireen"),
        _e("لیلا", "Leila", "Layla", "Leyla"), _e("سارا", "Sara", "Sarah"),
    ),
    "family": (
        _e("حسینی", "Hosseini", "Husseini", "Hoseini"), _e("احمدی", "Ahmadi", "Ahmedi"),
        _e("محمدی", "Mohammadi", "Mohammedi", "Muhammadi"),
        _e("رضایی", "Rezaei", "Rezaee", "Rezai"),
        _e("کریمی", "Karimi", "Karimy"), _e("نوری", "Nouri", "Noori", "Nuri"),
        _e("رحیمی", "Rahimi", "Raheemi"),
    ),
}  # fmt: skip

TAMIL: Table = {
    "male": (
        _e("முருகன்", "Murugan", "Murukan"), _e("சிவகுமார்", "Sivakumar", "Shivakumar"),
        _e("கணேசன்", "Ganesan", "Kanesan"), _e("ராஜா", "Raja", "Rajah"),
        _e("செல்வம்", "Selvam", "Chelvam"), _e("தினேஷ்", "Dinesh", "Thinesh"),
    ),
    "female": (
        _e("லட்சுமி", "Lakshmi", "Latchumi", "Laxmi"), _e("பிரியா", "Priya", "Piriya"),
        _e("கவிதா", "Kavitha", "Kavita"), _e("மீனா", "Meena", "Mina"),
        _e("தர்ஷினி", "Tharshini", "Darshini"),
    ),
    "family": (
        _e("சுப்பிரமணியம்", "Subramaniam", "Subramanian", "Suppiramaniyam"),
        _e("நடராஜா", "Nadarajah", "Natarajah", "Nadaraja"),
        _e("கந்தசாமி", "Kandasamy", "Kanthasamy", "Kandaswamy"),
        _e("சிவநேசன்", "Sivanesan", "Shivanesan"), _e("ராஜரத்தினம்", "Rajaratnam", "Rajaretnam"),
    ),
}  # fmt: skip

SINHALA: Table = {
    "male": (
        _e("නිමල්", "Nimal", "Nimall"), _e("සුනිල්", "Sunil", "Suneel"), _e("කසුන්", "Kasun"),
        _e("චමින්ද", "Chaminda", "Chamindha"),
    ),
    "female": (
        _e("කුමාරි", "Kumari", "Kumary"), _e("නිරෝෂා", "Nirosha", "Nirosa"),
        _e("දිල්රුක්ෂි", "Dilrukshi", "Dilrukshy"),
    ),
    "family": (
        _e("පෙරේරා", "Perera", "Pereira"), _e("ප්‍රනාන්දු", "Fernando", "Fernandu"),
        _e("සිල්වා", "Silva", "De Silva"), _e("ජයසූරිය", "Jayasuriya", "Jayasooriya"),
        _e("බණ්ඩාර", "Bandara", "Banda"),
    ),
}  # fmt: skip

THAI: Table = {
    "male": (
        _e("สมชาย", "Somchai", "Somchay"), _e("สมศักดิ์", "Somsak", "Somsakdi"),
        _e("ประเสริฐ", "Prasert", "Prasoet", "Praserd"), _e("วิชัย", "Wichai", "Vichai"),
        _e("สุรชัย", "Surachai", "Surachay"),
    ),
    "female": (
        _e("สมหญิง", "Somying", "Som Ying"), _e("มาลี", "Malee", "Mali"), _e("สุดา", "Suda"),
        _e("นภา", "Napa", "Naphaa", "Nabha"), _e("ปราณี", "Pranee", "Prani"),
    ),
    "family": (
        _e("สุวรรณรัตน์", "Suwannarat", "Suwanarat", "Suvannarat"),
        _e("ศรีสุข", "Srisuk", "Sisuk", "Srisook"), _e("ทองดี", "Thongdee", "Thongdi", "Tongdee"),
        _e("แก้วมณี", "Kaewmanee", "Kaewmani", "Kaeomani"), _e("บุญมา", "Boonma", "Bunma"),
    ),
}  # fmt: skip

# Chinese: pinyin first, then Cantonese / Hokkien / Wade-Giles spellings met in the region.
CHINESE: Table = {
    "male": (
        _e("伟", "Wei", "Wai"), _e("强", "Qiang", "Keung", "Chiang"), _e("明", "Ming", "Meng"),
        _e("军", "Jun", "Chun", "Kwan"), _e("志明", "Zhiming", "Chi Ming", "Chee Meng"),
    ),
    "female": (
        _e("芳", "Fang", "Fong"), _e("娜", "Na", "Nah"), _e("丽", "Li", "Lai", "Lee"),
        _e("静", "Jing", "Ching", "Cheng"), _e("秀英", "Xiuying", "Siu Ying", "Hsiu-ying"),
    ),
    "family": (
        _e("王", "Wang", "Wong", "Ong"), _e("李", "Li", "Lee", "Lei"),
        _e("张", "Zhang", "Cheung", "Chang", "Teo"), _e("陈", "Chen", "Chan", "Tan"),
        _e("刘", "Liu", "Lau", "Lao"), _e("林", "Lin", "Lam", "Lim"),
    ),
}  # fmt: skip

# Vietnamese is Latin script already: the original keeps its diacritics.
VIETNAMESE: Table = {
    "male": (
        _e("Văn An", "Van An"), _e("Minh Tuấn", "Minh Tuan"), _e("Văn Hùng", "Van Hung"),
        _e("Quốc Bảo", "Quoc Bao"), _e("Đức Anh", "Duc Anh", "Dyc Anh"),
    ),
    "female": (
        _e("Thị Hoa", "Thi Hoa"), _e("Thị Lan", "Thi Lan"), _e("Ngọc Anh", "Ngoc Anh"),
        _e("Thu Trang", "Thu Trang"), _e("Thị Mai", "Thi Mai"),
    ),
    "family": (
        _e("Nguyễn", "Nguyen", "Nguyn", "Ngyuen"), _e("Trần", "Tran", "Tranh"), _e("Lê", "Le"),
        _e("Phạm", "Pham", "Pam"), _e("Hoàng", "Hoang", "Huynh"), _e("Võ", "Vo", "Vu"),
    ),
}  # fmt: skip

# Culture tables by name; "burmese" is built from syllables in node.synthetic.
CULTURES: dict[str, dict[str, tuple[Entry, ...]]] = {
    "arabic": ARABIC,
    "rohingya": ROHINGYA,
    "bengali": BENGALI,
    "persian": PERSIAN,
    "tamil": TAMIL,
    "sinhala": SINHALA,
    "thai": THAI,
    "chinese": CHINESE,
    "vietnamese": VIETNAMESE,
}
