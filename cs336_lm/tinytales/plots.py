"""Plot templates for the tinytales story generator: openings, twelve plots in four stages, and closings.

A plot is a dict of stages — ``setup`` (the situation), ``problem``, ``middle`` (attempts and dialogue) and
``resolve`` — each a tuple of interchangeable alternatives; a story takes one alternative per stage (two for
``middle``) and wraps them in a shared opening and closing, so every part combines with every other.
Templates are ``str.format_map`` strings. Fixed fields are chosen once per story: ``{H}``/``{he}``/``{He}``/
``{his}``/``{His}``/``{him}`` for the hero, ``{F}``/``{fhe}``/``{fHe}``/``{fhis}``/``{fhim}`` for the friend,
``{A}``/``{ahe}``/``{aHe}``/``{ahis}`` for the grown-up, plus ``{place}``, ``{a_obj}``, ``{food}``… (see
``cs336_lm.tinytales.stories.story_fields``). Fields starting with ``r_`` (``{r_adj}``, ``{r_say}``, ``{r_move}``…)
are drawn afresh at every use.
"""

INTROS = (
    "{opener}, there was {H_intro}. {He} lived in {home}.",
    "{opener}, in {home}, there lived {H_intro}.",
    "{opener}, {H_intro} lived in {home}, next door to {A_intro}.",
    "There was once {H_intro} who lived in {home}. Everyone said {he} was very {htrait}.",
    "{H} was {H_intro_short}. {He} lived in {home} with {his} family.",
    "In {home} lived {H_intro}. {His} favorite thing in the world was {his} {obj}.",
)

INTRO_EXTRAS = (
    "{He} loved to {activity} more than anything.",
    "{His} best friend was {F_intro}.",
    "Every morning {he} said hello to the {r_bird} that sat on the {tree} tree.",
    "{He} had {a_obj} that {he} carried everywhere.",
    "{He} always wore a {color} hat, even when it was hot.",
    "{His} favorite food was {food}.",
    "{He} liked to smell every {r_flower} in the garden.",
    "{He} was a little {bad} about new things, but {he} was also very {htrait}.",
    "{He} liked to wear {a_clothes}, even when the weather did not need it.",
    "{He} dreamed that one day {he} would {dream}.",
    "Every day {he} waved at the driver of the {vehicle} that went past {his} window.",
)

CLOSINGS = (
    "From that day on, {H} and {F} were the best of friends.",
    "That night, {H} went to sleep with a big smile on {his} face.",
    "{H} felt {good} all the way home.",
    "And {H} never forgot that day.",
    "When {he} got home, {he} told {A} the whole story, and they laughed together.",
    "The sun went down, and {H} was tired but {good}.",
    '{A} gave {him} a big hug and said, "I am so proud of you."',
    "After that, {H} always remembered what {he} had learned.",
    "They ate {food} together and talked about their day.",
    "It was the best day {H} had ever had.",
)

DIGRESSIONS = (
    "A {r_bug} landed on a {r_flower} nearby.",
    "Somewhere far away, a dog barked.",
    "The air smelled of {r_flower}s and warm grass.",
    "A {r_bird} sang from the top of a {r_tree} tree.",
    "{H}'s tummy rumbled, because {he} was thinking about {r_food}.",
    "The clouds looked like {r_adj} sheep.",
    "{He} heard {r_sound} and looked around, but it was only the wind.",
    "{r_scene}",
    "{r_scene}",
    "{r_scene}",
    "A {r_vehicle} rumbled past, and {H} waved.",
)

LOST = {
    "setup": (
        "{time}, {H} took {his} {obj} to {place}, {place_detail}. {weather}",
        "{time}, {H} and {F} went to {place} to play with {his} {obj}. {weather}",
    ),
    "problem": (
        "When it was time to go home, {H} looked for {his} {obj}, but it was gone! {He} felt very {bad}.",
        "{H} put {his} {obj} down to {activity}. When {he} turned around, the {obj} was not there. "
        '"{r_ex}! Where is my {obj}?" {he} {r_say}.',
        "Suddenly {H} saw that {his} {obj} was missing. {His} eyes filled with tears.",
    ),
    "middle": (
        '{F} {r_move} over. "Don\'t worry, I will help you look," {fhe} {r_say}.',
        "They looked behind the {tree} tree and under every bench, but they could not find it.",
        '{H} asked a {r_bird}, "Have you seen my {obj}?" The bird just flew away.',
        "They searched {r_adv} until the shadows grew long.",
        '"Let\'s think," said {F}. "Where did you go after we got here?"',
    ),
    "resolve": (
        'At last {F} shouted, "I found it!" The {obj} was {hide}. {H} hugged {fhim} tight.',
        "Then {H} saw something {color} {hide}. It was {his} {obj}! {He} laughed with joy.",
        'Just then {A} came by holding the {obj}. "I found this {hide}," {ahe} said with a smile.',
    ),
    "moral": (
        '"Friends are the best treasure of all," said {A}.',
        "{H} learned to keep {his} things in a safe place.",
        "Good friends help you look, even when it is hard.",
    ),
}

FRIEND = {
    "setup": (
        "{time}, {H} went to {place}, {place_detail}. {weather} {He} wanted someone to play with, but "
        "{he} did not know anyone there.",
        "{H} and {A} had just moved to a new town. {time}, {H} walked to {place} all alone.",
    ),
    "problem": (
        "{He} saw {F_intro} sitting all alone on a bench. {fHe} looked {bad}. {H} was shy and did not know "
        "what to say.",
        "{F_intro} was playing nearby, but when {H} came close, {F} ran away and hid.",
        'The other children were busy. "Nobody wants to play with me," {H} {r_say} {r_adv}.',
    ),
    "middle": (
        '{H} took a deep breath and walked over. "Hello, I am {H}. Do you want to {activity}?"',
        '{F} looked up. "I am {F}. I am new here too," {fhe} said {r_adv}.',
        "{H} held out {his} {obj} to share. {F} smiled for the first time.",
        "At first {F} did not answer. So {H} sat down and waited {r_adv}.",
        '"I like your {obj}," said {F}. "It is very {r_adj}."',
    ),
    "resolve": (
        "Soon the two of them were laughing and playing together until the sun went down.",
        "They played all afternoon, and {H} did not feel {bad} any more.",
        '"Will you come back tomorrow?" asked {F}. "Yes!" said {H}. "Every day!"',
    ),
    "moral": (
        "Sometimes a friend is just one hello away.",
        "{H} learned that being brave can start with a smile.",
        "New places are less scary when you make a friend.",
    ),
}

FEAR = {
    "setup": (
        "{H} was afraid of {fear}. {He} did not like to talk about it.",
        "{H} was {htrait}, but there was one thing {he} was scared of: {fear}.",
    ),
    "problem": (
        "{time}, {A} said it was time to {fear_act}. {H}'s knees shook and {his} heart went thump, thump.",
        "{time}, {H} had to {fear_act}. {He} felt so {bad} that {he} wanted to run away.",
    ),
    "middle": (
        '"I can\'t do it," {H} {r_say}. {A} knelt down beside {him}. "Being scared is okay," {ahe} said.',
        '{F} held {his} hand. "I will be right here with you," {fhe} said {r_adv}.',
        "{H} closed {his} eyes and counted to ten. One, two, three, all the way to ten.",
        "{A} told {him} a story about a {r_adj} little {fkind} who was scared too, but tried anyway.",
        "{H} remembered {his} {obj} and held it tight. It made {him} feel a little braver.",
    ),
    "resolve": (
        "Slowly, {H} began to {fear_act}. It was not so bad after all! {He} felt {good}.",
        'At last {H} did it! "I did it!" {he} {r_say}. Everyone clapped and cheered.',
        "{H} was still a little scared, but {he} did it anyway. That is what being brave means.",
    ),
    "moral": (
        "Being brave does not mean you are never scared.",
        "{H} learned that you can feel scared and still be brave.",
    ),
}

SHARE = {
    "setup": (
        "{time}, {A} gave {H} {a_obj}. It was the most {r_adj} thing {H} had ever seen.",
        "{time}, {H} brought {food} to {place} for a picnic with {F}. {weather}",
    ),
    "problem": (
        '{F} wanted to hold it too. "No, it is mine!" {H} {r_say}, and {he} held it tight.',
        '"Can I have some?" asked {F}. "No," said {H}. "I want it all for myself." {F} looked {bad}.',
        '{F} grabbed for the {obj}, and {H} pulled it back. "Stop it!" they both shouted.',
    ),
    "middle": (
        "{F} walked away {r_adv}. {H} was alone with {his} {obj}, but it did not feel like fun any more.",
        "{H} played by {himself}, but soon {he} felt {bad}. It was no fun to play alone.",
        '{A} saw what happened. "How would you feel if {F} would not share with you?" {ahe} asked.',
        "{H} thought about it for a long time. {His} tummy felt funny and sad.",
    ),
    "resolve": (
        '{H} ran after {F}. "I am sorry," {he} said. "Let\'s share it together." {F} smiled.',
        "{H} broke the {food} in two and gave {F} the bigger half. They both felt {good}.",
        "{H} said sorry, and they took turns. Sharing was much more fun than keeping.",
    ),
    "moral": (
        "Sharing makes everyone happy.",
        "{H} learned that things are more fun when you share them.",
        "Saying sorry can fix more than you think.",
    ),
}

WEATHER_TROUBLE = {
    "setup": (
        "{H} and {F} had a plan. They were going to {activity} at {place}, {place_detail}.",
        "{H} could hardly sit still. Today {he} was going to {place} to {activity}!",
    ),
    "problem": (
        "But when they got there, dark clouds filled the sky. Then the rain began to pour down!",
        "But the wind began to howl, and it blew so hard that {H}'s hat flew away.",
        "But it started to snow, and soon everything was white and cold. They could not {activity} now.",
        "But there was a great clap of thunder, and {A} said they had to go back inside.",
    ),
    "middle": (
        '{H} felt {bad}. "Now our day is ruined," {he} {r_say}.',
        "{H} pressed {his} nose against the window and watched the {r_adj} raindrops run down the glass.",
        '"Let\'s not give up," said {F}. "We can think of something else."',
        '{A} said, "When the weather changes, you can change your plans too."',
    ),
    "resolve": (
        "So they built a fort out of blankets and pretended it was a castle. It was even more fun.",
        "They put on boots and jumped in every puddle they could find. Splash! They laughed and laughed.",
        "{A} made hot cocoa, and they played games by the window until the sky cleared.",
        "Later the sun came out, and a rainbow appeared over {place}. It was worth the wait.",
    ),
    "moral": (
        "Sometimes the best plans are the ones you did not plan.",
        "{H} learned that a rainy day can be a happy day too.",
    ),
}

RESCUE = {
    "setup": (
        "{time}, {H} was walking through {place}, {place_detail}. {weather}",
        "{time}, {H} and {F} went for a walk to {place}.",
    ),
    "problem": (
        "Suddenly {he} heard {sound}. {He} looked and saw {rescue} that {rescue_trouble}.",
        "Near the path, {H} found {rescue}. It {rescue_trouble}, and it looked {r_bad}.",
    ),
    "middle": (
        '"Poor little thing," {H} {r_say}. "We have to help it."',
        "{H} was too small to help alone, so {he} {r_move} off to find {A_intro}.",
        "{H} wanted to help, but {he} did not know how. {He} thought very hard.",
        '"Be gentle," said {F}. "It is scared."',
    ),
    "resolve": (
        "{A} came at once and {rescue_fix}. The little animal was safe at last.",
        "Together they {rescue_fix}. {H} felt {good} inside.",
        "{H} {rescue_fix}, slowly and carefully. Then the little animal looked up as if to say thank you.",
    ),
    "moral": (
        "Helping others makes your own heart feel warm.",
        "Even small helpers can do big things.",
        "Everyone needs a helping hand sometimes.",
    ),
}

CONTEST = {
    "setup": (
        "Everyone in town was excited about {event}, where {event_detail}.",
        "{time}, {A} told {H} about {event}, where {event_detail}.",
    ),
    "problem": (
        "{H} wanted to win more than anything. {He} practiced every day, but {he} was still not very good.",
        "{H} signed up right away. But on the big day, {he} felt so {bad} that {his} hands shook.",
    ),
    "middle": (
        "Halfway through, {H} saw {F} fall down. {H} stopped to help {fhim} up.",
        '{A} said, "Just do your best. That is all anyone can do."',
        "Everything went wrong at first. {His} {obj} fell over and everyone gasped.",
        '"You can do it!" shouted {F} from the crowd.',
    ),
    "resolve": (
        "{H} did not win first prize, but the judge gave {him} a special ribbon for kindness.",
        "{H} tried again, and this time it went perfectly. {He} won a {color} ribbon!",
        "In the end {F} won, and {H} cheered the loudest of all. Winning was not the only thing that mattered.",
    ),
    "moral": (
        "Being kind is better than being first.",
        "{H} learned that doing your best is what really counts.",
    ),
}

MAKE = {
    "setup": (
        "{time}, {H} decided to make {make} for {A}. {He} gathered everything {he} needed and got to work.",
        "It was almost {A}'s birthday. {H} and {F} wanted to make {make} as a surprise.",
    ),
    "problem": (
        "{He} worked {r_adv} all morning. But just when it was finished, {make_mishap}!",
        "They worked hard, and it looked wonderful. Then, oh no, {make_mishap}.",
    ),
    "middle": (
        '"It is ruined!" {H} {r_say}. {He} sat down and felt very {bad}.',
        '{F} said, "We can fix it. Let\'s try again, together."',
        "{H} looked at the mess for a long time. Then {he} had an idea.",
        "They started again from the beginning. This time they were extra careful.",
    ),
    "resolve": (
        'When {A} saw it, {ahe} smiled the biggest smile. "It is perfect," {ahe} said.',
        "It was not the same as before, but it was even better, because they made it together.",
        "{A} loved the surprise so much that {ahe} kept it on the shelf for years.",
    ),
    "moral": (
        "Working together makes big jobs small.",
        "A gift made with love is the best gift of all.",
    ),
}

QUEST = {
    "setup": (
        '{A} once told {H} about {quest}. "It is {quest_where}," {ahe} said.',
        "{time}, {H} found an old map in {his} {obj}. It showed the way to {quest}, {quest_where}.",
    ),
    "problem": (
        "{H} and {F} set off at once. Soon they came to {obstacle}. How could they get past it?",
        "{H} packed some {food} and started walking. But the way was blocked by {obstacle}.",
    ),
    "middle": (
        "{F} had a clever idea, and together they found a way around.",
        "They met {A_intro}, who showed them a secret path.",
        "Next they came to {obstacle2}. They held hands and went on {r_adv}.",
        '"Are we lost?" asked {F}. "No," said {H}. "We just have not found it yet."',
    ),
    "resolve": (
        "At last they found {quest}. It was even more {r_adj} than they had imagined.",
        "When they finally got there, there was no treasure. But they had had the best adventure ever.",
        "They found it just as the sun was setting. They sat and looked at it for a long, long time.",
    ),
    "moral": (
        "The world is full of surprises if you look closely.",
        "The journey can be the best part of the adventure.",
    ),
}

NOISE = {
    "setup": (
        "{time}, {H} was lying in bed. {weather} Everything was quiet.",
        "{time}, {H} and {F} were having a sleepover in {home}.",
    ),
    "problem": (
        "Suddenly there was {sound}! {H} sat up. {His} heart was beating fast.",
        'Then they heard {sound}, and then another. "What was that?" whispered {F}.',
    ),
    "middle": (
        "{H} took {his} flashlight and {r_move} down the hall {r_adv}.",
        '"Maybe it is a monster," said {F}. "Monsters are not real," said {H}, but {his} voice shook.',
        "The sound came again, closer this time. They held their breath.",
    ),
    "resolve": (
        "It was only {rescue}! It had come in looking for something to eat. They laughed and laughed.",
        "It was just the {pet_kind} from next door, playing with a {r_adj} ball. {H} giggled.",
        "It was only the wind, rattling the old window. {A} came and closed it, and everyone slept well.",
    ),
    "moral": (
        "Things are not so scary once you look at them in the light.",
        "{H} learned that most strange noises have a simple answer.",
    ),
}

SKILL = {
    "setup": (
        "{H} really wanted to learn to {skill}. All the big kids could do it.",
        '{time}, {A} said, "Today I will teach you to {skill}." {H} jumped up and down.',
    ),
    "problem": (
        "The first time {H} tried, {he} {skill_fail}. The second time, {he} {skill_fail} again.",
        "{H} tried and tried, but every time {he} {skill_fail}. {He} felt very {bad}.",
    ),
    "middle": (
        '"Maybe I will never learn," {H} {r_say}. "Everyone learns at their own speed," said {A}.',
        "{F} showed {him} how {fhe} did it, slowly, one step at a time.",
        "{H} practiced in the morning and in the evening, and even in {his} dreams.",
    ),
    "resolve": (
        'Then one day, {H} {skill_win}! "Look at me!" {he} shouted. Everyone cheered.',
        "After many tries, {H} {skill_win}. {He} was so {good} that {he} did it again and again.",
    ),
    "moral": (
        "If you keep trying, you can do hard things.",
        "A little patience goes a long way.",
    ),
}

TRUTH = {
    "setup": (
        "{time}, {H} was playing inside, even though {A} had said to play outside.",
        "{time}, {H} was running around the house with {his} {obj}.",
    ),
    "problem": (
        "Crash! {He} {break_how} and broke the {broken}. {H} froze. {He} felt very {bad}.",
        "{H} {break_how}, and the {broken} broke into pieces. Nobody had seen it happen.",
    ),
    "middle": (
        "{H} hid the pieces under {his} bed. But all day long {his} tummy felt funny.",
        '"Who broke the {broken}?" asked {A}. {H} did not say anything.',
        "{H} wanted to blame the cat, but that did not feel right.",
    ),
    "resolve": (
        '{H} went to {A}. "It was me. I am sorry," {he} said. {A} hugged {him}. "Thank you for telling me the truth."',
        "At last {H} told the truth. {A} was not angry. Together they glued the {broken} back together.",
    ),
    "moral": (
        "Telling the truth is always the right thing to do.",
        "{H} learned that the truth feels better than a secret.",
    ),
}

PLOTS = (LOST, FRIEND, FEAR, SHARE, WEATHER_TROUBLE, RESCUE, CONTEST, MAKE, QUEST, NOISE, SKILL, TRUTH)
